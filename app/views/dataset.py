import streamlit as st

st.title("Dataset")
st.info("Coming soon.")
