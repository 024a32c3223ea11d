import streamlit as st

st.title("Training")
st.info("Coming soon.")
